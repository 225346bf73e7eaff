"""`python -m manga_pix2pix` runs the command line."""

from manga_pix2pix.cli import main

main(prog_name="manga-pix2pix")
