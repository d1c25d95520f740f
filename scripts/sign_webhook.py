"""Signs webhook bodies with the schemes' own reference implementations.

  sign_webhook.py headers --scheme S --secret X [--id ID] [--timestamp UNIX] < body
      prints the signature headers as JSON.
  sign_webhook.py event EVENT.json --scheme S --secret X
      prints EVENT.json (an API Gateway event from events/) re-signed for now, for
      `cargo lambda invoke --data-file` (signatures expire after 300 s).

Schemes: standard-webhooks (the `standardwebhooks` package) and stripe-v1 (`stripe`).
With the local stack up, the dev secrets are in .fintx/local.env:
  FINTX_CONNECTOR_DEMO_BANK_SECRET (standard-webhooks), FINTX_CONNECTOR_DEMO_STRIPE_SECRET (stripe-v1).
"""

import argparse
import datetime
import json
import sys
import time
import uuid


def headers(scheme: str, secret: str, body: str, msg_id: str | None, timestamp: int | None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    if scheme == "standard-webhooks":
        from standardwebhooks.webhooks import Webhook

        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        when = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
        signature = Webhook(secret).sign(msg_id, when, body)
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    if scheme == "stripe-v1":
        import stripe

        return {"stripe-signature": stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)}
    sys.exit(f"unknown scheme {scheme}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["headers", "event"])
    parser.add_argument("event", nargs="?")
    parser.add_argument("--scheme", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--id")
    parser.add_argument("--timestamp", type=int)
    args = parser.parse_args()
    if args.mode == "headers":
        body = sys.stdin.buffer.read().decode("utf-8")
        print(json.dumps(headers(args.scheme, args.secret, body, args.id, args.timestamp)))
        return
    event = json.load(open(args.event))
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "stripe-signature"):
        event["headers"].pop(name, None)
    event["headers"].update(headers(args.scheme, args.secret, event["body"], args.id, args.timestamp))
    print(json.dumps(event, indent=2))


if __name__ == "__main__":
    main()
