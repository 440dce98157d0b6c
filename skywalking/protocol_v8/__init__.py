"""SkyWalking v3 protocol (sw8, OAP 8+): protos, generated modules, encoder, and the reporter's session
(``session``: instance properties and keep-alive)."""
