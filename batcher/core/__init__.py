"""Pure rules: plain values in, plain values out.

No asyncio, aiohttp, sqlite3 or files here, and no clock of its own (time is passed in): the
schema, the row model, the document merge, the decision core, the retry policy, redaction and
the estimate. Everything else imports these; they import only ``errors``.
"""
