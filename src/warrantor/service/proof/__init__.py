"""Evidence the service mints and keeps: sealing, the key ring, the transparency log,
timestamps, integrity checks, SCITT export."""
