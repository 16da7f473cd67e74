// swift-tools-version:6.0
// A package outside devif that uses it as a user would: it depends on devif
// by path and writes `import Devif` and nothing else. Scripts/consumer builds
// it (and checks that it holds README's code blocks verbatim); the lab suite
// runs it against a gadget.
import PackageDescription

let package = Package(
    name: "devif-consumer",
    dependencies: [
        // By path, as a user with a clone would; with a release, by URL:
        // .package(url: "https://github.com/<owner>/devif", from: "...").
        .package(name: "devif", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "devif-consumer", dependencies: [
            .product(name: "Devif", package: "devif"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
