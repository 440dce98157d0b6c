"""SkyWalking v3 protocol (sw8, OAP 8+): protos, generated modules, encoder."""
