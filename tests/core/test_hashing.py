import hashlib
import io

from pipeline.core.hashing import file_sha256, stream_sha256


def test_file_and_stream_hashes_are_the_sha256_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 8193  # over two 1 MiB blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == expected and file_sha256(str(path)) == expected
    assert stream_sha256(io.BytesIO(data)) == expected
    stream = io.BytesIO(data)
    stream.read(100)  # only what is left to read
    assert stream_sha256(stream) == hashlib.sha256(data[100:]).hexdigest()
    assert stream_sha256(io.BytesIO(b"")) == hashlib.sha256(b"").hexdigest()
