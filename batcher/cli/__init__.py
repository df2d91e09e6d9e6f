"""argparse -> library call -> exit code. ``asyncio.run`` happens only here; environment
variables are read only here (``cli.environment``).
"""
