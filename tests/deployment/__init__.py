"""The loopback deployment: stub and real model servers behind haproxy, `orchard api` processes,
Streamlit replicas behind nginx, and the load-and-fault test over them (see harness.py)."""
