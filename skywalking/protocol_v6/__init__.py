"""SkyWalking 6.6.0 protocol (trace protocol v2): protos, generated modules, encoder, registration, and the
reporter's session (``session``)."""
