"""The five SSDTF roles: sensor, broker gateway, distribution server, management server,
data user."""
