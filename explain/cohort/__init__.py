"""Many cases at once: batch runs on Ray and the worklist that reads them back.

May import: everything below it, trust and request included. Only the CLI and the page import it.
"""
