"""HL7 v2 adapter: MLLP transport (HL7 v2.5.1 Appendix C, IHE ITI TF-2x C.2.1), server and client."""
