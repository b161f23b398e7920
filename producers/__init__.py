"""Everything that writes statements to ``xapi.statements``."""
