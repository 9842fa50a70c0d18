"""The sandbox world: local emulators of the ARM API Management API and the Kubernetes API server.

Used by the tests, the benchmarks and `python -m sandbox demo|serve`. Not deployed (.funcignore).
"""
