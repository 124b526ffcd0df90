"""The sandbox's describe has the shape of Salesforce's: every key the real one sends, each with its type
(null where the type allows it), for every field, every object describe and every describeGlobal entry.
A client that indexes into a key the real API always sends (an ELT tool reads `compoundFieldName` of each
field) must not crash on the sandbox.

The key lists are Salesforce's documented types — SOAP API Developer Guide, "describeSObjectResult"
(`Field`, `ChildRelationship`, `PicklistEntry`) and "describeGlobal" (`DescribeGlobalSObjectResult`) —
as the partner WSDL defines them (the same lists, with these types, are in jsforce's
src/api/soap/schema.ts, generated from that WSDL). `?` marks a type that may be null. The REST describe
serialises the same properties as JSON with every key present; the differences REST makes are listed
separately below (seen in REST describe responses of API v59–v61).
"""

from __future__ import annotations

from typing import Any

import pytest

FIELD = {
    "aggregatable": "boolean", "aiPredictionField": "boolean", "autoNumber": "boolean", "byteLength": "number",
    "calculated": "boolean", "calculatedFormula": "?string", "cascadeDelete": "?boolean", "caseSensitive": "boolean",
    "compoundFieldName": "?string", "controllerName": "?string", "createable": "boolean", "custom": "boolean",
    "dataTranslationEnabled": "?boolean", "defaultValue": "?any", "defaultValueFormula": "?string",
    "defaultedOnCreate": "boolean", "dependentPicklist": "?boolean", "deprecatedAndHidden": "boolean", "digits": "number",
    "displayLocationInDecimal": "?boolean", "encrypted": "?boolean", "externalId": "?boolean", "extraTypeInfo": "?string",
    "filterable": "boolean", "filteredLookupInfo": "?object", "formulaTreatNullNumberAsZero": "?boolean",
    "groupable": "boolean", "highScaleNumber": "?boolean", "htmlFormatted": "?boolean", "idLookup": "boolean",
    "inlineHelpText": "?string", "label": "string", "length": "number", "mask": "?string", "maskType": "?string",
    "name": "string", "nameField": "boolean", "namePointing": "?boolean", "nillable": "boolean",
    "permissionable": "boolean", "picklistValues": "?list", "polymorphicForeignKey": "boolean", "precision": "number",
    "queryByDistance": "boolean", "referenceTargetField": "?string", "referenceTo": "?list", "relationshipName": "?string",
    "relationshipOrder": "?number", "restrictedDelete": "?boolean", "restrictedPicklist": "boolean", "scale": "number",
    "searchPrefilterable": "boolean", "soapType": "string", "sortable": "?boolean", "type": "string", "unique": "boolean",
    "updateable": "boolean", "writeRequiresMasterRead": "?boolean",
}  # fmt: skip
PICKLIST_ENTRY = {
    "active": "boolean",
    "defaultValue": "boolean",
    "label": "?string",
    "validFor": "?string",
    "value": "string",
}
CHILD_RELATIONSHIP = {
    "cascadeDelete": "boolean", "childSObject": "string", "deprecatedAndHidden": "boolean", "field": "string",
    "junctionIdListNames": "?list", "junctionReferenceTo": "?list", "relationshipName": "?string",
    "restrictedDelete": "?boolean",
}  # fmt: skip
GLOBAL_SOBJECT = {
    "activateable": "boolean", "createable": "boolean", "custom": "boolean", "customSetting": "boolean",
    "dataTranslationEnabled": "?boolean", "deepCloneable": "boolean", "deletable": "boolean",
    "deprecatedAndHidden": "boolean", "feedEnabled": "boolean", "hasSubtypes": "boolean", "idEnabled": "boolean",
    "isInterface": "boolean", "isSubtype": "boolean", "keyPrefix": "?string", "label": "string", "labelPlural": "string",
    "layoutable": "boolean", "mergeable": "boolean", "mruEnabled": "boolean", "name": "string", "queryable": "boolean",
    "replicateable": "boolean", "retrieveable": "boolean", "searchable": "boolean", "triggerable": "boolean",
    "undeletable": "boolean", "updateable": "boolean",
}  # fmt: skip
SOBJECT = {
    "actionOverrides": "?list", "activateable": "boolean", "childRelationships": "list", "compactLayoutable": "boolean",
    "createable": "boolean", "custom": "boolean", "customSetting": "boolean", "dataTranslationEnabled": "?boolean",
    "deepCloneable": "boolean", "defaultImplementation": "?string", "deletable": "boolean",
    "deprecatedAndHidden": "boolean", "feedEnabled": "boolean", "fields": "?list", "hasSubtypes": "boolean",
    "idEnabled": "boolean", "implementedBy": "?string", "implementsInterfaces": "?string", "isInterface": "boolean",
    "isSubtype": "boolean", "keyPrefix": "?string", "label": "string", "labelPlural": "string", "layoutable": "boolean",
    "mergeable": "boolean", "mruEnabled": "boolean", "name": "string", "namedLayoutInfos": "list",
    "networkScopeFieldName": "?string", "queryable": "boolean", "recordTypeInfos": "list", "replicateable": "boolean",
    "retrieveable": "boolean", "searchLayoutable": "?boolean", "searchable": "boolean", "supportedScopes": "?list",
    "triggerable": "?boolean", "undeletable": "boolean", "updateable": "boolean", "urlDetail": "?string",
    "urlEdit": "?string", "urlNew": "?string",
}  # fmt: skip

# What REST does differently from the WSDL types above: it leaves out the data-translation and idEnabled
# flags and the SOAP-only url* properties, and adds its own keys (`urls` links the object's resources).
REST_OMITS = {"dataTranslationEnabled", "idEnabled", "urlDetail", "urlEdit", "urlNew"}
REST_GLOBAL_ADDS = {"associateEntityType": "?string", "associateParentEntity": "?string", "urls": "object"}
REST_SOBJECT_ADDS = {
    **REST_GLOBAL_ADDS, "extendedBy": "?string", "extendsInterfaces": "?string", "listviewable": "?boolean",
    "lookupLayoutable": "?boolean", "sobjectDescribeOption": "?string",
}  # fmt: skip


def rest_shape(documented: dict[str, str], adds: dict[str, str] | None = None) -> dict[str, str]:
    return {**{key: kind for key, kind in documented.items() if key not in REST_OMITS}, **(adds or {})}


def type_errors(entry: dict[str, Any], shape: dict[str, str], where: str) -> list[str]:
    """Every missing or extra key of `entry`, and every value whose type is not the documented one."""
    errors = [f"{where}: missing {key}" for key in sorted(set(shape) - set(entry))]
    errors += [f"{where}: unexpected {key}" for key in sorted(set(entry) - set(shape))]
    checks = {
        "boolean": lambda v: isinstance(v, bool), "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int) and not isinstance(v, bool), "list": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict), "any": lambda v: True,
    }  # fmt: skip
    for key, kind in shape.items():
        if key not in entry:
            continue
        value, nullable = entry[key], kind.startswith("?")
        if value is None and nullable:
            continue
        if not checks[kind.lstrip("?")](value):
            errors.append(f"{where}: {key} = {value!r} is not {kind}")
    return errors


def test_the_documented_field_shape_has_the_key_a_client_crashed_on():
    # The peer's ELT source read these of every field; a list without them could not catch the defect.
    assert {"compoundFieldName", "extraTypeInfo", "highScaleNumber", "queryByDistance"} <= set(rest_shape(FIELD))
    assert len(rest_shape(FIELD)) == 57


def test_every_describe_has_every_documented_key_with_its_type(shared_sf):
    describe_global = shared_sf.describe()
    assert (
        type_errors(
            describe_global, {"encoding": "?string", "maxBatchSize": "number", "sobjects": "list"}, "describeGlobal"
        )
        == []
    )
    errors: list[str] = []
    for entry in describe_global["sobjects"]:
        errors += type_errors(entry, rest_shape(GLOBAL_SOBJECT, REST_GLOBAL_ADDS), f"sobjects[{entry['name']}]")
        describe = getattr(shared_sf, entry["name"]).describe()
        errors += type_errors(describe, rest_shape(SOBJECT, REST_SOBJECT_ADDS), entry["name"])
        for relationship in describe["childRelationships"]:
            errors += type_errors(
                relationship, CHILD_RELATIONSHIP, f"{entry['name']}.childRelationships[{relationship['childSObject']}]"
            )
        for field in describe["fields"]:
            where = f"{entry['name']}.{field['name']}"
            errors += type_errors(field, rest_shape(FIELD), where)
            for value in field["picklistValues"]:
                errors += type_errors(value, PICKLIST_ENTRY, f"{where}.picklistValues")
    assert errors == []


@pytest.mark.parametrize(("obj", "field", "compound"), [
    ("Contact", "FirstName", "Name"), ("Contact", "LastName", "Name"), ("Lead", "LastName", "Name"),
    ("User", "FirstName", "Name"), ("Contact", "Name", None), ("Account", "Name", None), ("Opportunity", "Amount", None),
])  # fmt: skip
def test_compound_field_names_point_at_a_field_of_the_object(shared_sf, obj, field, compound):
    fields = {f["name"]: f for f in getattr(shared_sf, obj).describe()["fields"]}
    assert fields[field]["compoundFieldName"] == compound
    assert compound is None or compound in fields
