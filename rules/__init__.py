"""Built-in rules (installed as memlint.rules): one rule per module, named after the rule.

memlint.engine imports every module of this package whose name does not start with "_" and
collects the Rule classes it defines.
"""
