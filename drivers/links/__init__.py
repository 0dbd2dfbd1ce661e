"""Emulated network links in front of real peers (placeholder; see open_link)."""
