"""Verifies webhook deliveries as a receiver would, with the Standard
Webhooks libraries: `standardwebhooks` and `svix`. Reads a JSON object from
stdin, {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body":
"..."}]}, and prints a JSON list with, for each delivery, what each
library said: "ok", or the error it raised."""

import json
import sys

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook


def said(verify):
    try:
        verify()
        return "ok"
    except Exception as error:  # what the library raised is the answer
        return f"{type(error).__name__}: {error}"


def main():
    request = json.load(sys.stdin)
    secret = request["secret"]
    results = []
    for delivery in request["deliveries"]:
        body = delivery["body"].encode()
        headers = delivery["headers"]
        results.append(
            {
                "standardwebhooks": said(
                    lambda: StandardWebhook(secret).verify(body, headers)
                ),
                "svix": said(lambda: SvixWebhook(secret).verify(body, headers)),
            }
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
