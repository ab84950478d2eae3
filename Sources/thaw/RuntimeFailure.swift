// RuntimeFailure: how a command reports a failure that is not about its arguments.
//
// ArgumentParser prints a thrown `ValidationError` with the usage text and exits 64 (EX_USAGE):
// right for a malformed option, wrong for a configuration file's content, a missing file, a failed
// run or a coordinator that does not answer. Any other error it prints as `Error: <description>`
// and exits 1, without the usage text. So commands throw `ValidationError` for their arguments
// only, and ``RuntimeFailure`` (or the library's own error) for everything else.
import ArgumentParser
import ThawPlan

/// A failure while running a command: printed as `Error: <message>` on stderr, exit status 1, no usage text.
struct RuntimeFailure: Error, CustomStringConvertible {
    /// What went wrong, naming the file, key or address concerned.
    let description: String

    /// A failure with this message.
    init(_ message: String) {
        description = message
    }

    /// The error a command throws for a configuration problem. A malformed `--set` is an argument
    /// error (usage, exit 64); anything else (the file's content, a file that cannot be read, a key the
    /// model rejects later) is a runtime failure naming `file`, which errors raised where the file is
    /// not known (such as the unfreezing planner's) get here.
    static func configuration(_ error: ConfigError, file: String?) -> any Error {
        if error.file == "--set" { return ValidationError(error.description) }
        var named = error
        if named.file.isEmpty { named.file = file ?? "<defaults>" }
        return RuntimeFailure(named.description)
    }
}
