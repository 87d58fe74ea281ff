"""Command line: one small module per command; each parses, calls the library, prints."""
