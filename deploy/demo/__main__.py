"""python -m deploy.demo: see deploy/demo/fill.py."""
import asyncio
import sys

from deploy.demo.fill import main, parse_args

sys.exit(asyncio.run(main(parse_args())))
