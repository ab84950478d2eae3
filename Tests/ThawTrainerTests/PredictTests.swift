// thaw predict: torchvision's evaluation transform against PIL's resize on a real photograph, and
// the real ImageNet MobileNetV2 calling scikit-learn's china.jpg a palace (class 698), as
// torchvision does. Pillow decodes the JPEG in a test venv; Thaw reads the NPY it writes.
import Foundation
import Testing
import ThawRun
import ThawTrainer
import ThawData
import ThawTesting

@Suite(.serialized) struct PredictTests {
    static let decode = """
        import sys
        import numpy as np
        from PIL import Image
        image = Image.open(sys.argv[1]).convert("RGB")
        np.save(sys.argv[2], np.asarray(image)[None])
        width, height = image.size
        resized = image.resize((int(width * 256 / height), 256), Image.BILINEAR)   # torchvision's Resize(256) on PIL
        np.save(sys.argv[3], (np.asarray(resized).astype(np.float32) / 255).transpose(2, 0, 1)[None].copy())
        """

    @Test func realMobileNetV2CallsChinaJpgAPalace() throws {
        let jpeg = try PretrainedFiles.chinaJPEG()
        let weights = try PretrainedFiles.mobileNetV2()
        let python = try PythonEnvironment.python(name: "pillow", packages: ["pillow", "numpy"], probe: "import PIL, numpy")
        let scratch = try ScratchRun()
        let images = scratch.path("china.npy"), resizedByPIL = scratch.path("china-256.npy")
        let decoded = try spawnProcessGroup([python, "-c", Self.decode, jpeg, images, resizedByPIL], hangGuardSeconds: 120)
        try #require(decoded.exitCode == 0, "\(decoded.output)")

        // The antialiased bilinear resize agrees with PIL's to within its 8-bit rounding.
        let loaded = try ImagePreprocessing.images(from: try NPYReader.read(images), file: images)
        #expect(loaded.shape == [1, 3, 427, 640])
        let reference = try NPYReader.read(resizedByPIL)
        let ours = ImagePreprocessing.evaluationTransform(loaded.values, shape: loaded.shape, resize: 256, crop: 0, normalization: nil)
        try #require(ours.shape == reference.shape, "\(ours.shape) vs PIL's \(reference.shape)")
        let differences = zip(ours.values, reference.floatValues()).map { abs($0 - $1) }
        let mean = differences.reduce(0, +) / Float(differences.count)
        #expect((differences.max() ?? 1) < 3 / 255 && mean < 0.5 / 255, "max \((differences.max() ?? 0) * 255)/255, mean \(mean * 255)/255")

        let thaw = try #require(thawExecutablePath())
        let predicted = try spawnProcessGroup([thaw, "predict", "--input", images, "--weights", weights, "--architecture", "mobilenet_v2", "--json"],
                                              hangGuardSeconds: 120)
        try #require(predicted.exitCode == 0, "\(predicted.output)")
        let results = try #require(try JSONSerialization.jsonObject(with: Data(predicted.output.utf8)) as? [[String: Any]])
        let top = try #require(results.first?["top"] as? [[String: Any]])
        #expect(top.first?["class"] as? Int == 698, "ImageNet class 698 is 'palace'; got \(top)")
        #expect((top.first?["probability"] as? Double ?? 0) > 0.5, "\(top)")
    }

    @Test func badImagesAndIncompleteWeightsAreRefusedByName() throws {
        let scratch = try ScratchRun(samples: 4, sampleShape: [5, 5])   // float [4, 5, 5]: not images
        let thaw = try #require(thawExecutablePath())
        let notImages = try spawnProcessGroup([thaw, "predict", "--input", scratch.path("x.npy"), "--weights", "w.safetensors",
                                               "--architecture", "mobilenet_v2"], hangGuardSeconds: 60)
        #expect(notImages.exitCode != 0 && notImages.output.contains(scratch.path("x.npy")) && notImages.output.contains("[N, C, H, W]"),
                "\(notImages.output)")
        let weights = try PretrainedFiles.mobileNetV2()
        let square = try ScratchRun(samples: 1, sampleShape: [3, 40, 40])
        let tenClasses = try spawnProcessGroup([thaw, "predict", "--input", square.path("x.npy"), "--weights", weights,
                                                "--architecture", "mobilenet_v2", "--classes", "10", "--resize", "0", "--crop", "0"],
                                               hangGuardSeconds: 60)
        #expect(tenClasses.exitCode != 0 && tenClasses.output.contains("classifier.1.weight"), "\(tenClasses.output)")
    }
}
