// Tests for CSVReader: headers, label columns, datasets, and malformed input naming file and line.
import Testing
import ThawData

@Suite struct CSVTests {
    @Test func readsHeaderAndLastColumnLabels() throws {
        let file = try TemporaryFile(text: "a,b,label\r\n1.5,2,0\r\n\r\n-3,4e1,2\r\n")
        let table = try CSVReader.read(file.path)
        #expect(table.columnNames == ["a", "b", "label"])
        #expect(table.featureCount == 2)
        #expect(table.features == [1.5, 2, -3, 40])
        #expect(table.labels == [0, 2])
        let dataset = try table.dataset()
        #expect(dataset.classCount == 3)
        #expect(dataset.sampleShape == [2])
        #expect(dataset.sample(1) == [-3, 40])
    }

    @Test func readsWithoutHeaderAndOtherLabelColumns() throws {
        let first = try CSVReader.parse("1, 0.5, 0.25\n0, 1, 2\n", file: "x.csv", labelColumn: .first)
        #expect(first.columnNames == nil)
        #expect(first.labels == [1, 0])
        #expect(first.features == [0.5, 0.25, 1, 2])
        let named = try CSVReader.parse("x;y;class\n5;6;1.0\n", file: "y.csv", labelColumn: .named("x"), separator: ";")
        #expect(named.labels == [5])
        #expect(named.features == [6, 1])
        let indexed = try CSVReader.parse("7,8,9\n", file: "z.csv", header: .absent, labelColumn: .index(1))
        #expect(indexed.labels == [8])
        #expect(indexed.features == [7, 9])
    }

    @Test func rejectsMalformedInput() throws {
        let cases: [(name: String, text: String, header: CSVReader.Header, label: CSVReader.LabelColumn, kind: DataError.Kind)] = [
            ("empty", "\n\n", .detect, .last, .badValue),
            ("header only", "a,b\n", .detect, .last, .badValue),
            ("ragged", "1,2,0\n3,1\n", .detect, .last, .sizeMismatch),
            ("not a number", "1,2,0\n3,x,1\n", .absent, .last, .badValue),
            ("fractional label", "1,2,0.5\n", .detect, .last, .badValue),
            ("negative label", "1,2,-1\n", .detect, .last, .badValue),
            ("label column out of range", "1,2,0\n", .detect, .index(3), .sizeMismatch),
            ("named without header", "1,2,0\n", .absent, .named("label"), .badHeader),
            ("unknown name", "a,b\n1,0\n", .detect, .named("label"), .badHeader),
        ]
        for (name, text, header, label, kind) in cases {
            let file = try TemporaryFile(text: text)
            let error = try #require(throws: DataError.self, "\(name)") {
                try CSVReader.read(file.path, header: header, labelColumn: label)
            }
            #expect(error.kind == kind, "\(name): \(error)")
            #expect(error.file == file.path, "\(name)")
        }
    }

    @Test func errorsNameLineAndColumn() throws {
        let error = try #require(throws: DataError.self) { try CSVReader.parse("a,b,c\n1,2,0\n1,oops,0\n", file: "t.csv") }
        #expect(error.description == "t.csv: line 3, column 2: 'oops' is not a number")
    }

    @Test func datasetRejectsLabelsBeyondClassCount() throws {
        let table = try CSVReader.parse("1,4\n", file: "c.csv")
        let error = try #require(throws: DataError.self) { try table.dataset(classCount: 3) }
        #expect(error.kind == .badValue)
        #expect(error.file == "c.csv")
    }
}
