#!/usr/bin/python3
"""A FUSE file system that loses what was not fsynced, to simulate a power cut.

Passes everything through to a backing directory, except file contents: writes and truncates go
to an in-memory image of the file and reach the backing file only on fsync/fdatasync (FUSE's
fsync request). sync_file_range never reaches a FUSE server, so, as on a disk whose cache is not
flushed, it makes nothing durable. Killing this process is the power cut: the images are lost and
the backing directory holds what a disk would after a power loss. Directory operations (create,
rename, unlink) are applied at once: this models the loss of file data, not of metadata.

Usage: lossyfs.py BACKING MOUNTPOINT   (as root; runs in the foreground)
"""
import errno
import os
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations


class LossyFS(Operations):
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.images = {}  # path -> bytearray, the contents not yet fsynced
        self.mu = threading.RLock()

    def _p(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _image(self, path):
        img = self.images.get(path)
        if img is None:
            with open(self._p(path), "rb") as f:
                img = bytearray(f.read())
            self.images[path] = img
        return img

    # metadata, passed through
    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        attrs = {k: getattr(st, k) for k in (
            "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")}
        with self.mu:
            if path in self.images:
                attrs["st_size"] = len(self.images[path])
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        return os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        return os.chown(self._p(path), uid, gid)

    def mkdir(self, path, mode):
        return os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        return os.rmdir(self._p(path))

    def unlink(self, path):
        with self.mu:
            self.images.pop(path, None)
        return os.unlink(self._p(path))

    def rename(self, old, new):
        with self.mu:
            if old in self.images:
                self.images[new] = self.images.pop(old)
            else:
                self.images.pop(new, None)
        return os.rename(self._p(old), self._p(new))

    def utimens(self, path, times=None):
        return os.utime(self._p(path), times)

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        return {k: getattr(st, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    # file contents, volatile until fsync
    def open(self, path, flags):
        return os.open(self._p(path), flags & ~(os.O_TRUNC | os.O_APPEND))

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        with self.mu:
            if path in self.images:
                return bytes(self.images[path][offset:offset + size])
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        with self.mu:
            img = self._image(path)
            if len(img) < offset:
                img.extend(b"\0" * (offset - len(img)))
            img[offset:offset + len(data)] = data
        return len(data)

    def truncate(self, path, length, fh=None):
        with self.mu:
            img = self._image(path)
            if length < len(img):
                del img[length:]
            else:
                img.extend(b"\0" * (length - len(img)))

    def fsync(self, path, datasync, fh):
        with self.mu:
            img = self.images.pop(path, None)
            if img is None:
                return 0
            with open(self._p(path), "r+b") as f:
                f.write(img)
                f.truncate(len(img))
                f.flush()
                os.fsync(f.fileno())
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)


if __name__ == "__main__":
    FUSE(LossyFS(sys.argv[1]), sys.argv[2], foreground=True, nothreads=False, allow_other=True)
