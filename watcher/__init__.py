"""The in-cluster watcher: Service and Ingress changes -> CloudEvents on an Event Grid topic.

It carries no desired state: an event only says "look at this Service" (or "look at everything"), and
the Functions app reads the truth itself. So the watcher may lose, repeat or reorder events freely; what
it must never lose is the fact that something changed, which is why a long publishing outage ends in
one cluster-resync event.
"""
