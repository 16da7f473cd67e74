import DevifCore

/// A class catalog file; what parses must also build a catalog and print
/// back (match rules and probe rules) without trapping.
func fuzz(_ bytes: [UInt8]) {
    let parsed = CatalogParser.parse(bytes, file: "fuzz.conf")
    var catalog = ClassCatalog.builtIn
    var diagnostics: [CatalogDiagnostic] = []
    catalog.merge(parsed.definitions, from: "fuzz.conf", diagnostics: &diagnostics)
    for d in parsed.definitions { for r in d.rules { _ = r.description } }
    for p in parsed.msOS10Probes {
        let round = CatalogParser.parse("[ms-os-1.0]\nprobe = \(p.description)\n", file: "r")
        precondition(round.msOS10Probes == [p], "probe rule \(p) does not read back")
    }
    _ = catalog.lookup("x")
}
