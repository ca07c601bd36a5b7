"""Built-in rules (installed as memlint.rules): one rule per module, named after the rule.

BUILTIN_MODULES lists them; memlint.engine imports each and collects its Rule classes.
"""

BUILTIN_MODULES = (
    "unmodelled_ops",
    "assumed_dims",
)
