"""Readers that turn files into validated domain records; the only code that touches input files."""
