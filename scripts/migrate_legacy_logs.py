"""Tag legacy EnrichmentLog documents (same as `enrichment migrate-legacy`)."""

import sys

from service.cli import main

if __name__ == "__main__":
    sys.exit(main(["migrate-legacy", *sys.argv[1:]]))
