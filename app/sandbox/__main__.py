"""`python -m app.sandbox --port 8900`: the same as `botmarket sandbox`."""

from app.sandbox.run import main

main()
