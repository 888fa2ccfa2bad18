"""Download the 24 Kodak images (kodim01..24.png) into <data_root>/KODAK and verify them.

    python data/download_kodak.py                     # into data/KODAK next to this script
    python data/download_kodak.py --data_root /datasets

Source: http://r0k.us/graphics/kodak/kodak/kodimNN.png (the paper's data/download_kodak.sh mirrored
it). Every file is checked against its size and SHA256 (the table below: the copies shipped in the
paper's repository, byte-identical to those in github.com/EmilienDupont/coin). Files already present
and verified are skipped; an interrupted download resumes where it stopped; a file appears under its
final name only once it is complete and verified. Runs from any working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import inrcompress.signals.download  # noqa: F401
except ImportError:  # not installed: use the package of this checkout
    sys.path.insert(0, str(HERE.parent / "lib"))

from inrcompress.signals.download import ScriptParser, download, read_sha256sums, run_script
from inrcompress.errors import InrError

BASE_URL = "http://r0k.us/graphics/kodak/kodak/"
# (file, bytes, SHA256)
KODAK = [
    ("kodim01.png", 736501, "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd"),
    ("kodim02.png", 617995, "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd"),
    ("kodim03.png", 502888, "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db"),
    ("kodim04.png", 637432, "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa"),
    ("kodim05.png", 785610, "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53"),
    ("kodim06.png", 618959, "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18"),
    ("kodim07.png", 566322, "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4"),
    ("kodim08.png", 788470, "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7"),
    ("kodim09.png", 582899, "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d"),
    ("kodim10.png", 593463, "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23"),
    ("kodim11.png", 621023, "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6"),
    ("kodim12.png", 531024, "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980"),
    ("kodim13.png", 822712, "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08"),
    ("kodim14.png", 692201, "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e"),
    ("kodim15.png", 612582, "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683"),
    ("kodim16.png", 534247, "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54"),
    ("kodim17.png", 602078, "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b"),
    ("kodim18.png", 780947, "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa"),
    ("kodim19.png", 671476, "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc"),
    ("kodim20.png", 492462, "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a"),
    ("kodim21.png", 637051, "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b"),
    ("kodim22.png", 701970, "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29"),
    ("kodim23.png", 557596, "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf"),
    ("kodim24.png", 706397, "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96"),
]


def parse_args(argv):
    parser = ScriptParser("download_kodak.py", __doc__, data_root=HERE, receives="KODAK")
    parser.add_argument("--base_url", default=BASE_URL, help="where kodimNN.png are (default: %(default)s)")
    parser.add_argument("--images", nargs="+", metavar="NAME",
                        help="only these images (kodim01 or kodim01.png ...); default: all 24")
    parser.add_verify_args(checksums="a sha256sum listing to verify against instead of the built-in table "
                                     "(sizes are then not checked)",
                           no_verify="do not check SHA256/size (only that each transfer was complete)")
    parser.add_transfer_args(retries=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_script(parse_args, argv, fetch)


def fetch(opts) -> int:
    if opts.checksums:
        table = [(name, None, digest) for name, digest in read_sha256sums(opts.checksums).items()]
    else:
        table = list(KODAK)
    if opts.images:
        wanted = {n if n.endswith(".png") else f"{n}.png" for n in opts.images}
        unknown = sorted(wanted - {name for name, _, _ in table})
        if unknown:
            raise InrError(f"not a Kodak image of the checksum table: {', '.join(unknown)}")
        table = [row for row in table if row[0] in wanted]
    folder = Path(opts.data_root) / "KODAK"
    base = opts.base_url if opts.base_url.endswith("/") else opts.base_url + "/"
    for number, (name, size, digest) in enumerate(table, 1):
        print(f"[{number}/{len(table)}] {name}", flush=True)
        download(base + name, folder / name, sha256=None if opts.no_verify else digest,
                 size=None if opts.no_verify else size, progress=not opts.no_progress,
                 timeout=opts.timeout, retries=opts.retries, quiet=True)
    print(f"{folder}: {len(table)} images{'' if opts.no_verify else ', all verified (size and SHA256)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
