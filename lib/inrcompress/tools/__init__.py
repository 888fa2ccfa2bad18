"""The command-line tools. Each is `main(argv) -> exit code`, callable in-process; the files in
image_compression/ and shape_compression/ only call these."""
