"""The protocol core: messages, identities, signatures, codecs. No I/O here."""
