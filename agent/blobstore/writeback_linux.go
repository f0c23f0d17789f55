package blobstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing f's data now, so that the
// fsyncs of a batch find their data under way or done and share one journal
// commit instead of forcing one each. It is only a hint: errors are ignored
// (the fsync that follows reports them).
func startWriteback(f *os.File) {
	unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
