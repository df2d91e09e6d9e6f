"""The input file: streaming CSV / JSONL readers, duplicate JSON keys, and the validate pass.

Imports ``core`` only; the duplicate finder it is given (``core.identity.KeyIndex``) may live
in the state, but this package never opens it.
"""
