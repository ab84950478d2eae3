// Random: small, seedable, platform-independent generators.
//
// Every random choice in Thaw (initialization, dropout masks, shuffles, augmentation)
// comes from a generator seeded from the run's seed, so runs are reproducible and
// identical across ranks where they must be.

/// SplitMix64: a tiny, fast, well-mixed 64-bit generator with a 64-bit state.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The generator's whole state; saving and restoring it reproduces the sequence.
    public var state: UInt64

    /// Creates a generator from a seed.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in [0, 1) with 24 bits of precision.
    @inlinable
    public mutating func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// A standard normal value (Box–Muller).
    @inlinable
    public mutating func nextNormal() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// Mixes several values into one seed, for generators keyed by (seed, rank, epoch, ...).
    public static func mix(_ values: UInt64...) -> UInt64 {
        var generator = SplitMix64(seed: 0x1234_5678_9ABC_DEF0)
        var result: UInt64 = 0
        for value in values {
            generator.state ^= value
            result = generator.next()
        }
        return result
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
