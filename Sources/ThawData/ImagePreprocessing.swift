// ImagePreprocessing: torchvision's evaluation transform for pretrained backbones, on arrays:
// resize the shorter side (bilinear with antialiasing, as PIL and torchvision's antialias=True do),
// crop the centre, scale to [0, 1] and normalize. `thaw predict` uses it on user images given as
// NPY arrays (uint8 [N, H, W, C] as numpy and PIL give them, or float [N, C, H, W] in [0, 1]).

/// Errors in images handed to preprocessing.
public struct ImageInputError: Error, CustomStringConvertible, Equatable {
    /// The file the images came from.
    public var file: String
    /// What is wrong.
    public var message: String

    /// A one-line explanation naming the file.
    public var description: String { "\(file): \(message)" }
}

/// Resize, centre crop and normalization for image arrays.
public enum ImagePreprocessing {
    /// Converts an NPY array of images to float [N, C, H, W] in [0, 1].
    ///
    /// uint8 arrays are read as [N, H, W, C] (C = 1 or 3) or [H, W, C] for one image and divided by
    /// 255; float arrays are read as [N, C, H, W] or [C, H, W], already in [0, 1].
    public static func images(from array: NPYArray, file: String) throws(ImageInputError) -> (values: [Float], shape: [Int]) {
        var shape = array.shape
        if shape.count == 3 { shape.insert(1, at: 0) }
        guard shape.count == 4, shape.allSatisfy({ $0 > 0 }) else {
            throw ImageInputError(file: file, message: "expected images [N, H, W, C] (uint8) or [N, C, H, W] (float); got shape \(array.shape)")
        }
        let raw = array.floatValues()
        if array.dataType == .uint8 {
            let (N, H, W, C) = (shape[0], shape[1], shape[2], shape[3])
            guard C == 1 || C == 3 else {
                throw ImageInputError(file: file, message: "uint8 images must be [N, H, W, C] with 1 or 3 channels last; got shape \(array.shape)")
            }
            var values = [Float](repeating: 0, count: raw.count)
            for n in 0..<N {
                for y in 0..<H {
                    for x in 0..<W {
                        for c in 0..<C {
                            values[((n * C + c) * H + y) * W + x] = raw[((n * H + y) * W + x) * C + c] / 255
                        }
                    }
                }
            }
            return (values, [N, C, H, W])
        }
        guard shape[1] == 1 || shape[1] == 3 else {
            throw ImageInputError(file: file, message: "float images must be [N, C, H, W] with 1 or 3 channels first; got shape \(array.shape)")
        }
        return (raw, shape)
    }

    /// Resamples one [C, H, W] image to [C, outHeight, outWidth]: bilinear, with the filter widened by
    /// the scale factor when shrinking (antialiasing), pixel centres aligned (align_corners = false).
    public static func resize(_ image: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
                              toHeight outHeight: Int, width outWidth: Int, into output: UnsafeMutablePointer<Float>) {
        let rows = weights(input: height, output: outHeight)
        let columns = weights(input: width, output: outWidth)
        var horizontal = [Float](repeating: 0, count: height * outWidth)
        for c in 0..<channels {
            let plane = image + c * height * width
            for y in 0..<height {
                for x in 0..<outWidth {
                    var sum: Float = 0
                    for (index, weight) in columns[x] { sum += plane[y * width + index] * weight }
                    horizontal[y * outWidth + x] = sum
                }
            }
            let out = output + c * outHeight * outWidth
            for y in 0..<outHeight {
                for x in 0..<outWidth {
                    var sum: Float = 0
                    for (index, weight) in rows[y] { sum += horizontal[index * outWidth + x] * weight }
                    out[y * outWidth + x] = sum
                }
            }
        }
    }

    /// The resampling taps of each output position: a triangle filter whose half-width is the scale
    /// factor when shrinking (1 when enlarging), normalized to sum to 1.
    static func weights(input: Int, output: Int) -> [[(Int, Float)]] {
        let scale = Double(input) / Double(output)
        let support = max(scale, 1)
        return (0..<output).map { o in
            let centre = (Double(o) + 0.5) * scale
            let first = max(0, Int((centre - support).rounded(.down)))
            let last = min(input - 1, Int((centre + support).rounded(.up)))
            var taps: [(Int, Float)] = []
            var total = 0.0
            for i in first...max(first, last) {
                let weight = max(0, 1 - abs((Double(i) + 0.5 - centre) / support))
                if weight > 0 { taps.append((i, Float(weight))); total += weight }
            }
            if taps.isEmpty { return [(min(max(Int(centre), 0), input - 1), 1)] }
            return taps.map { ($0.0, Float(Double($0.1) / total)) }
        }
    }

    /// torchvision's evaluation transform on [N, C, H, W] images in [0, 1]: resize so the shorter side
    /// is `resize` (keeping the aspect ratio; 0 skips), crop the central `crop` × `crop` (0 skips), then
    /// normalize (nil leaves [0, 1]). Grayscale becomes 3 channels when `normalization` has 3.
    public static func evaluationTransform(_ values: [Float], shape: [Int], resize: Int, crop: Int,
                                           normalization: PixelNormalization?) -> (values: [Float], shape: [Int]) {
        let (N, C, H, W) = (shape[0], shape[1], shape[2], shape[3])
        var (height, width) = (H, W)
        if resize > 0 {
            if H <= W { (height, width) = (resize, max(1, Int((Double(W) * Double(resize) / Double(H)).rounded(.down)))) }
            else { (height, width) = (max(1, Int((Double(H) * Double(resize) / Double(W)).rounded(.down))), resize) }
        }
        let side = (crop > 0 ? min(crop, height) : height, crop > 0 ? min(crop, width) : width)
        // torchvision's CenterCrop: top = round((height − crop) / 2).
        let top = Int((Double(height - side.0) / 2).rounded()), left = Int((Double(width - side.1) / 2).rounded())
        let outputChannels = normalization?.mean.count ?? C
        var output = [Float](repeating: 0, count: N * outputChannels * side.0 * side.1)
        var resized = [Float](repeating: 0, count: C * height * width)
        values.withUnsafeBufferPointer { source in
            for n in 0..<N {
                let image = source.baseAddress! + n * C * H * W
                if height == H && width == W {
                    resized.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: image, count: C * H * W) }
                } else {
                    resized.withUnsafeMutableBufferPointer {
                        ImagePreprocessing.resize(image, channels: C, height: H, width: W, toHeight: height, width: width, into: $0.baseAddress!)
                    }
                }
                for c in 0..<outputChannels {
                    let sourceChannel = C == 1 ? 0 : c
                    let mean = normalization?.mean[c] ?? 0, deviation = normalization?.standardDeviation[c] ?? 1
                    for y in 0..<side.0 {
                        for x in 0..<side.1 {
                            let value = resized[(sourceChannel * height + y + top) * width + x + left]
                            output[((n * outputChannels + c) * side.0 + y) * side.1 + x] = (value - mean) / deviation
                        }
                    }
                }
            }
        }
        return (output, [N, outputChannels, side.0, side.1])
    }
}
