"""Print the project's dependency requirements (plus chosen extras) from pyproject.toml, one per line.

Used by scripts/ensure_env.sh to install dependencies without installing the checkout itself.
"""

import argparse
import tomllib
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extras", default="", help="comma-separated optional-dependency groups")
    args = parser.parse_args()
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in filter(None, args.extras.split(",")):
        requirements += project["optional-dependencies"][extra]
    print("\n".join(requirements))


if __name__ == "__main__":
    main()
