"""Widgets and renderables the SAFE Lab screens share (histogram, Table 3, phases, APDUs)."""
