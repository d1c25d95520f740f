"""schemathesis hooks for tests/python/contract.py (loaded through SCHEMATHESIS_HOOKS).

Bodies that are not UTF-8 are left out: the local runner (`cargo lambda watch`) cannot put
them into the API Gateway event it builds and answers 500 itself, before any function
runs. API Gateway base64-encodes such bodies instead, and the handlers' answer to any
bytes is covered by the fuzz target `transactions_requests`, which sends binary bodies
straight to `transactions::handle`.
"""

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
