"""Ask narrowgate's ProdManager facade `whoami` through the real `prod-manager`
client. Usage: prodmanager_whoami.py BASE_URL, the token in NG_TOKEN.
Prints {"with_token", "without_token", "bad_token"} as JSON."""

import json
import os
import sys

from prodmanager import ProdManager

url = sys.argv[1]
out = {}
out["with_token"] = ProdManager(url, token=os.environ["NG_TOKEN"]).token.whoami().playload
out["without_token"] = ProdManager(url).token.whoami().playload
try:
    ProdManager(url, token="not.a.token").token.whoami()
    out["bad_token"] = None
except Exception as e:  # the client raises Exception(status, body)
    out["bad_token"] = list(e.args)
print(json.dumps(out))
