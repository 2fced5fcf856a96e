#!/usr/bin/env python3
"""A device for the fleet provisioning tests, on paho-mqtt (MQTT 3.1.1 or 5).

Connects with a client certificate over TLS, then plays a script of steps
given as JSON on the command line, all on one connection:

  {"sub": ["topic", ...]}                     subscribe (QoS 1), wait for SUBACK
  {"pub": "topic", "json": {...}}             publish JSON (QoS 1), wait for one reply
  {"pub": "topic", "raw": "text", "qos": 0}   publish raw bytes
  {"pub": ..., "wait": false}                 do not wait for a reply
  {"recv": true}                              wait for one message
  {"signal": "PATH"}                          create file PATH (the test goes on)
  {"await": "PATH"}                           wait until file PATH exists

Strings "$TOKEN" and "$CSR" in a payload are replaced by the last ownership
token received and the contents of --csr. Prints one JSON object:
{"connected": rc, "replies": [{"topic": t, "payload": p}, ...],
 "disconnected": rc or null, "granted": [...]}.
"""

import argparse
import json
import os
import queue
import ssl
import sys
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--protocol", choices=["311", "5"], default="311")
    ap.add_argument("--csr")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--client-id", default="fleet-test-device")
    ap.add_argument("steps")
    args = ap.parse_args()
    steps = json.loads(args.steps)
    csr = open(args.csr).read() if args.csr else ""

    proto = mqtt.MQTTv5 if args.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=proto)
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    client.tls_set_context(ctx)

    events = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p=None: events.put(("connect", int(rc.value) if hasattr(rc, "value") else int(rc)))
    client.on_subscribe = lambda c, u, mid, rcs, p=None: events.put(("suback", [int(r.value) if hasattr(r, "value") else int(r) for r in rcs]))
    client.on_message = lambda c, u, m: events.put(("message", (m.topic, m.payload)))
    client.on_disconnect = lambda c, u, f, rc, p=None: events.put(("disconnect", int(rc.value) if hasattr(rc, "value") else int(rc)))

    out = {"connected": None, "replies": [], "disconnected": None, "granted": []}

    def wait_for(kind):
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            try:
                ev, val = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if ev == "disconnect":
                out["disconnected"] = val
                return None
            if ev == kind:
                return val
            if ev == "message":
                record(val)
        return None

    token = {"value": ""}

    def record(msg):
        topic, payload = msg
        try:
            body = json.loads(payload)
        except Exception:
            body = payload.hex()
        if isinstance(body, dict) and "certificateOwnershipToken" in body:
            token["value"] = body["certificateOwnershipToken"]
        out["replies"].append({"topic": topic, "payload": body})

    def fill(value):
        if isinstance(value, str):
            return value.replace("$TOKEN", token["value"]).replace("$CSR", csr)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as e:
        out["connected"] = str(e)
        print(json.dumps(out))
        return
    client.loop_start()
    out["connected"] = wait_for("connect")
    if out["connected"] == 0:
        for step in steps:
            if out["disconnected"] is not None:
                break
            if "sub" in step:
                client.subscribe([(t, 1) for t in step["sub"]])
                granted = wait_for("suback")
                out["granted"].append(granted)
            elif "signal" in step:
                open(step["signal"], "w").close()
            elif "await" in step:
                deadline = time.time() + args.timeout
                while not os.path.exists(step["await"]) and time.time() < deadline:
                    time.sleep(0.02)
            elif "recv" in step:
                msg = wait_for("message")
                if msg is not None:
                    record(msg)
            elif "pub" in step:
                if "json" in step:
                    payload = json.dumps(fill(step["json"]))
                else:
                    payload = fill(step.get("raw", ""))
                client.publish(step["pub"], payload, qos=step.get("qos", 1))
                if step.get("wait", True):
                    msg = wait_for("message")
                    if msg is not None:
                        record(msg)
                else:
                    time.sleep(0.3)
        # Let a pending disconnect arrive.
        try:
            ev, val = events.get(timeout=0.3)
            if ev == "disconnect":
                out["disconnected"] = val
        except queue.Empty:
            pass
    client.loop_stop()
    client.disconnect()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
