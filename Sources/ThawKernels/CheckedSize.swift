// CheckedSize: products and sums of sizes that came from input (a configuration, a file header),
// computed without the overflow trap of `*` and `+`: nil instead, for the caller to turn into an
// error that names the input.

/// Element counts and byte counts that cannot trap.
public enum CheckedSize {
    /// The product of `extents`, or nil when an extent is negative or the product does not fit in an Int.
    public static func product<Extents: Sequence>(_ extents: Extents) -> Int? where Extents.Element == Int {
        var result = 1
        for extent in extents {
            guard extent >= 0, let next = product(result, extent) else { return nil }
            result = next
        }
        return result
    }

    /// a × b, or nil when it does not fit in an Int.
    public static func product(_ a: Int, _ b: Int) -> Int? {
        let (result, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : result
    }

    /// a + b, or nil when it does not fit in an Int.
    public static func sum(_ a: Int, _ b: Int) -> Int? {
        let (result, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : result
    }

    /// The sum of `values`, or nil when it does not fit in an Int.
    public static func sum<Values: Sequence>(_ values: Values) -> Int? where Values.Element == Int {
        var result = 0
        for value in values {
            guard let next = sum(result, value) else { return nil }
            result = next
        }
        return result
    }
}
