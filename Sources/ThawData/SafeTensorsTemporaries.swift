// SafeTensorsTemporaries: the `NAME.safetensors.tmp-PID` files that `SafeTensors.write` fills before
// renaming them over NAME.safetensors. A writer killed before its rename leaves one behind, as big
// as the file it was writing; nothing else ever removes it. These helpers name the temporaries and
// remove those whose writer is gone.
//
// Note: stale temporaries. A temporary is stale when its PID is not a live process on this host:
// `kill(pid, 0)` fails with ESRCH. Any other answer (the process exists, or belongs to another user)
// keeps it, so a live writer's temporary is never deleted. A PID that was reused since keeps a stale
// file until the next clean-up, which is harmless. The check means something only on the host that
// wrote the file, so a run directory is cleaned by the rank that writes into it (rank 0).
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeTensors {
    /// What follows a file's name in its temporary's name, before the writer's PID.
    static let temporaryMarker = ".tmp-"

    /// The temporary file this process writes `path` to before renaming it into place.
    static func temporaryPath(for path: String) -> String {
        path + temporaryMarker + String(getpid())
    }

    /// The writer's PID when `name` is a safetensors temporary (`NAME.safetensors.tmp-PID`), else nil.
    static func temporaryWriter(_ name: String) -> pid_t? {
        guard let marker = name.range(of: ".safetensors" + temporaryMarker, options: .backwards),
              marker.lowerBound > name.startIndex else { return nil }
        let digits = name[marker.upperBound...]
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
              let pid = pid_t(digits), pid > 0 else { return nil }
        return pid
    }

    /// Removes the safetensors temporaries in `directory` (not below it) whose writer is no longer a
    /// live process on this host; see "Note: stale temporaries". A missing directory holds none.
    /// - Returns: The removed files' paths, sorted, and their total size in bytes.
    @discardableResult
    public static func removeStaleTemporaries(in directory: String) -> (paths: [String], bytes: Int) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        var bytes = 0
        for name in names.sorted() {
            guard let pid = temporaryWriter(name), kill(pid, 0) == -1, errno == ESRCH else { continue }
            let path = (directory as NSString).appendingPathComponent(name)
            var status = stat()
            // Regular files only: unlink never removes a directory, and a symlink is not ours.
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG, unlink(path) == 0 else { continue }
            removed.append(path)
            bytes += Int(status.st_size)
        }
        return (removed, bytes)
    }
}
