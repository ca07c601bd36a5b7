"""Built-in memlint rules (installed as memlint.rules)."""
