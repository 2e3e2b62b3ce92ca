"""Evidence primitives: canonical JSON, keys, DSSE envelopes, Merkle log, checkpoints, RFC 3161.

Pure: imports no framework, database or HTTP code, so the offline verifier can use it.
"""
