"""Framework code shared by every task: config, registry, runs, output, device, loop.

Nothing here knows a method or the CLI.
"""
