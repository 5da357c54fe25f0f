"""The sans-IO core: records, the state machine, list queries and the wire protocol.

Nothing in here performs I/O or reads a clock: time is always passed in.
"""
