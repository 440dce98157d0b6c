"""Protocol stand-ins: small servers speaking a real wire protocol, for servers that do not install here."""
