"""Serving: a trained policy behind openpi's websocket protocol, and the evaluation policy that calls it.

    vlm2vla serve policy.path=runs/train-policy port=8000           # serving/server.py
    vlm2vla eval policy.type=remote policy.url=ws://host:8000        # serving/remote_policy.py

codec.py is the wire format (msgpack with NumPy arrays, as openpi-client packs them), layout.py the
request and reply keys, batching.py the micro-batcher that stacks concurrent requests into one forward.
"""
