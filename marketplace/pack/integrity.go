package pack

// CheckFiles checks the files against manifest.json (sizes, digests,
// modes, nothing missing or added) without the signatures: what the
// marketplace checks of an upload before its review.
func (p *Package) CheckFiles() error { return p.checkFiles() }
