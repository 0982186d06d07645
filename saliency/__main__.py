"""``python -m saliency`` runs the command-line tool."""

from saliency.cli import main

main()
