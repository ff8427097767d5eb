import ArgumentParser
@main struct Unseg: ParsableCommand { func run() {} }
