"""Describe metadata of the sandbox org: which objects and fields exist, their types and permissions.

Everything that checks an identifier (SOQL compiler, PATCH, describe endpoints) reads it from here, so an
object or field exists in the sandbox exactly when it is listed below. Field and object names are
looked up case-insensitively, as Salesforce does, and answered with their canonical spelling. Each
reference field also says what deleting its target does to it (`on_delete`), which both the org's deletes
and describe's cascadeDelete / restrictedDelete follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NUMERIC_TYPES = frozenset({"double", "currency", "percent", "int"})
TEXT_TYPES = frozenset({"id", "reference", "string", "picklist", "textarea", "email", "phone", "url"})
# Datetimes are stored as integer epoch seconds: a third of the size of ISO text, and still time-ordered.
SQL_TYPES = {
    "double": "REAL",
    "currency": "REAL",
    "percent": "REAL",
    "int": "INTEGER",
    "boolean": "INTEGER",
    "datetime": "INTEGER",
}
SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}

# (stage, default probability, forecast category, is closed, is won) — Salesforce's standard sales process.
OPPORTUNITY_STAGES: tuple[tuple[str, int, str, bool, bool], ...] = (
    ("Prospecting", 10, "Pipeline", False, False),
    ("Qualification", 10, "Pipeline", False, False),
    ("Needs Analysis", 20, "Pipeline", False, False),
    ("Value Proposition", 50, "Pipeline", False, False),
    ("Id. Decision Makers", 60, "Pipeline", False, False),
    ("Perception Analysis", 70, "Pipeline", False, False),
    ("Proposal/Price Quote", 75, "Pipeline", False, False),
    ("Negotiation/Review", 90, "Commit", False, False),
    ("Closed Won", 100, "Closed", True, True),
    ("Closed Lost", 0, "Omitted", True, False),
)
STAGE_INFO = {stage[0]: stage for stage in OPPORTUNITY_STAGES}

# What deleting a record does to a record whose reference field points at it (Salesforce's rules for the
# standard relationships; a custom lookup's default is to clear the field):
CASCADE = "cascade"  # the child goes to the Recycle Bin with the parent (Account -> Contacts, Opportunities)
RESTRICT = "restrict"  # the parent cannot be deleted while a live child points at it (Account <- Cases)
CLEAR = "clear"  # the child stays and its field is emptied (Account.ParentId, custom lookups)
KEEP = "keep"  # the child keeps the id (audit references: CreatedById, a converted lead's ConvertedAccountId)
ON_DELETE_RULES = (CASCADE, RESTRICT, CLEAR, KEEP)


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str = ""
    updateable: bool = True
    createable: bool = True
    nillable: bool = True
    calculated: bool = False
    length: int = 0
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    picklist: tuple[str, ...] = ()
    formula: str | None = None
    name_field: bool = False
    on_delete: str = CLEAR  # only read for reference fields; see ON_DELETE_RULES
    compound_field: str | None = None  # the compound field this one is a component of (FirstName -> Name)
    person_name: bool = False  # the compound name of a person (Contact, Lead, User), built from its parts
    auto_number: bool = False  # numbered by the org on create, like the seeded records (CaseNumber 00001001, ...)

    def __post_init__(self) -> None:
        if self.on_delete not in ON_DELETE_RULES:
            raise ValueError(f"{self.name}: on_delete must be one of {ON_DELETE_RULES}, got {self.on_delete!r}")

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def long_text(self) -> bool:
        return self.type == "textarea" and self.length > 255

    @property
    def filterable(self) -> bool:
        return not self.long_text

    @property
    def sortable(self) -> bool:
        return not self.long_text

    @property
    def groupable(self) -> bool:
        # Salesforce refuses to group by floating point numbers and datetimes (use DAY_ONLY etc.).
        return not self.long_text and self.type not in ("double", "currency", "percent", "datetime")

    @property
    def aggregatable(self) -> bool:
        return not self.long_text and self.type != "boolean"

    @property
    def polymorphic(self) -> bool:
        return len(self.reference_to) > 1

    @property
    def sql_type(self) -> str:
        return SQL_TYPES.get(self.type, "TEXT")

    @property
    def cascade_delete(self) -> bool:
        return self.type == "reference" and self.on_delete == CASCADE

    @property
    def restricted_delete(self) -> bool:
        return self.type == "reference" and self.on_delete == RESTRICT

    def describe(self) -> dict[str, Any]:
        """The field's entry in describe: every property the real REST describe sends, null where unset.

        Real describe never omits a key (clients index into it: an ELT tool reads `compoundFieldName` of
        every field), so neither does this; the values follow the field's definition above.
        """
        numeric = self.type in ("double", "currency", "percent")
        return {
            "aggregatable": self.aggregatable,
            "aiPredictionField": False,
            "autoNumber": self.auto_number,
            "byteLength": self.length * 3 if self.type in TEXT_TYPES else 0,
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "cascadeDelete": self.cascade_delete,
            "caseSensitive": False,
            "compoundFieldName": self.compound_field,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": False if self.type == "boolean" else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.type == "boolean" or self.name in ("Id", "CreatedDate", "OwnerId"),
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 9 if self.type == "int" else 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": False,
            "extraTypeInfo": self.extra_type_info,
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.groupable,
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.type == "id",
            "inlineHelpText": None,
            "label": self.label or self.name,
            "length": self.length if self.type in TEXT_TYPES else 0,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": self.polymorphic,
            "nillable": self.nillable,
            # Field-level security applies to fields an admin can hide: not to required or system fields.
            "permissionable": self.nillable and (self.createable or self.updateable or self.calculated),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": value, "validFor": None, "value": value}
                for value in self.picklist
            ],
            "polymorphicForeignKey": self.polymorphic,
            "precision": 18 if numeric else 0,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": self.restricted_delete,
            "restrictedPicklist": False,
            "scale": 2 if numeric else 0,
            "searchPrefilterable": False,
            "soapType": SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.sortable,
            "type": self.type,
            "unique": False,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }

    @property
    def extra_type_info(self) -> str | None:
        if self.type == "textarea":
            return "plaintextarea"
        return "personname" if self.person_name else None


@dataclass(frozen=True)
class ObjectDef:
    name: str
    label: str
    label_plural: str
    key_prefix: str | None
    fields: tuple[FieldDef, ...]
    queryable: bool = True
    replicateable: bool = True
    updateable: bool = True
    createable: bool = True
    deletable: bool = True
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)
    _relationships: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self._by_lower[f.name.lower()] = f
            if f.relationship_name:
                self._relationships[f.relationship_name.lower()] = f

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def field(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        return self._relationships.get(name.lower())

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def summary(self, version: str) -> dict[str, Any]:
        """The describeGlobal entry for this object: every key the real REST describeGlobal sends."""
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": self.queryable,
            "mergeable": False,
            "mruEnabled": self.queryable,
            "name": self.name,
            "queryable": self.queryable,
            "replicateable": self.replicateable,
            "retrieveable": self.queryable,
            "searchable": self.queryable,
            "triggerable": self.queryable,
            "undeletable": self.deletable,
            "updateable": self.updateable,
            "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The object's describe: the describeGlobal entry plus every further key the real REST describe sends."""
        return {
            **self.summary(version),
            "actionOverrides": [],
            "childRelationships": child_relationships(self.name),
            "compactLayoutable": self.queryable,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [f.describe() for f in self.fields],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [],
            "searchLayoutable": self.queryable,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": [{"label": "All", "name": "everything"}],
        }


# ---------------------------------------------------------------- field builders


def _f(name: str, type_: str, label: str = "", **options: Any) -> FieldDef:
    if type_ in ("string", "email", "phone", "url") and "length" not in options:
        options["length"] = 255
    if type_ in ("id", "reference"):
        options.setdefault("length", 18)
    return FieldDef(name=name, type=type_, label=label or name, **options)


def _readonly(name: str, type_: str, label: str = "", **options: Any) -> FieldDef:
    return _f(name, type_, label, updateable=False, createable=False, **options)


def _ref(name: str, to: str | tuple[str, ...], relationship: str, label: str = "", **options: Any) -> FieldDef:
    targets = (to,) if isinstance(to, str) else to
    return _f(name, "reference", label, reference_to=targets, relationship_name=relationship, **options)


def _pick(name: str, values: tuple[str, ...], label: str = "", **options: Any) -> FieldDef:
    return _f(name, "picklist", label, picklist=values, length=255, **options)


def _system(owner: bool = True, modifiable: bool = True) -> tuple[FieldDef, ...]:
    fields = [
        _readonly("Id", "id", "Record ID", nillable=False),
        _readonly("IsDeleted", "boolean", "Deleted", nillable=False),
        _readonly("CreatedDate", "datetime", "Created Date", nillable=False),
        _readonly(
            "CreatedById",
            "reference",
            "Created By ID",
            reference_to=("User",),
            relationship_name="CreatedBy",
            on_delete=KEEP,
        ),
    ]
    if modifiable:
        fields += [
            _readonly("LastModifiedDate", "datetime", "Last Modified Date", nillable=False),
            _readonly(
                "LastModifiedById",
                "reference",
                "Last Modified By ID",
                reference_to=("User",),
                relationship_name="LastModifiedBy",
                on_delete=KEEP,
            ),
        ]
    fields.append(_readonly("SystemModstamp", "datetime", "System Modstamp", nillable=False))
    if owner:
        fields.append(_ref("OwnerId", "User", "Owner", "Owner ID", nillable=False, on_delete=KEEP))
    return tuple(fields)


INDUSTRIES = (
    "Agriculture", "Banking", "Biotechnology", "Communications", "Consulting", "Education", "Electronics",
    "Energy", "Engineering", "Finance", "Healthcare", "Hospitality", "Insurance", "Manufacturing", "Media",
    "Retail", "Technology", "Telecommunications", "Transportation", "Utilities",
)  # fmt: skip
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other", "Advertisement", "Trade Show")
LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
REGIONS = ("AMER", "EMEA", "APAC", "LATAM")
OPPORTUNITY_TYPES = (
    "New Customer", "Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade",
)  # fmt: skip
MILESTONE_TYPES = ("First Response", "Resolution Time", "Escalation Response")

_OBJECTS: tuple[ObjectDef, ...] = (
    ObjectDef(
        "User",
        "User",
        "Users",
        "005",
        _system(owner=False)
        + (
            _f("Username", "string", nillable=False),
            _f("FirstName", "string", "First Name", length=40, compound_field="Name"),
            _f("LastName", "string", "Last Name", length=80, nillable=False, compound_field="Name"),
            _readonly("Name", "string", "Full Name", length=121, name_field=True, person_name=True),
            _f("Email", "email"),
            _f("Title", "string", length=80),
            _f("Department", "string", length=80),
            _f("IsActive", "boolean", "Active", nillable=False),
            _ref("ManagerId", "User", "Manager", "Manager ID", on_delete=KEEP),
        ),
        deletable=False,
    ),
    ObjectDef(
        "Account",
        "Account",
        "Accounts",
        "001",
        _system()
        + (
            _f("Name", "string", "Account Name", nillable=False, name_field=True),
            _pick("Type", ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"), "Account Type"),
            _pick("Industry", INDUSTRIES),
            _pick("Rating", ("Hot", "Warm", "Cold")),
            _pick("AccountSource", LEAD_SOURCES, "Account Source"),
            _f("AnnualRevenue", "currency", "Annual Revenue"),
            _f("NumberOfEmployees", "int", "Employees"),
            _f("BillingCity", "string", "Billing City", length=40),
            _f("BillingCountry", "string", "Billing Country", length=80),
            _f("Website", "url"),
            _f("Phone", "phone"),
            _ref("ParentId", "Account", "Parent", "Parent Account ID"),
            _f("Description", "textarea", length=32000),
        ),
    ),
    ObjectDef(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        _system()
        + (
            _ref("AccountId", "Account", "Account", "Account ID", on_delete=CASCADE),
            _f("FirstName", "string", "First Name", length=40, compound_field="Name"),
            _f("LastName", "string", "Last Name", length=80, nillable=False, compound_field="Name"),
            _readonly("Name", "string", "Full Name", length=121, name_field=True, person_name=True),
            _f("Email", "email"),
            _f("Title", "string", length=128),
            _f("Department", "string", length=80),
            _f("Phone", "phone", "Business Phone"),
            _pick("LeadSource", LEAD_SOURCES, "Lead Source"),
            _f("MailingCountry", "string", "Mailing Country", length=80),
        ),
    ),
    ObjectDef(
        "Lead",
        "Lead",
        "Leads",
        "00Q",
        _system()
        + (
            _f("FirstName", "string", "First Name", length=40, compound_field="Name"),
            _f("LastName", "string", "Last Name", length=80, nillable=False, compound_field="Name"),
            _readonly("Name", "string", "Full Name", length=121, name_field=True, person_name=True),
            _f("Company", "string", length=255, nillable=False),
            _f("Email", "email"),
            _pick("Status", LEAD_STATUSES, "Lead Status", nillable=False),
            _pick("LeadSource", LEAD_SOURCES, "Lead Source"),
            _pick("Industry", INDUSTRIES),
            _pick("Rating", ("Hot", "Warm", "Cold")),
            _f("Country", "string", length=80),
            _f("AnnualRevenue", "currency", "Annual Revenue"),
            _f("NumberOfEmployees", "int", "Employees"),
            _readonly("IsConverted", "boolean", "Converted", nillable=False),
            _readonly("ConvertedDate", "date", "Converted Date"),
            _readonly(
                "ConvertedAccountId",
                "reference",
                "Converted Account ID",
                reference_to=("Account",),
                relationship_name="ConvertedAccount",
                on_delete=KEEP,
            ),
            _readonly(
                "ConvertedContactId",
                "reference",
                "Converted Contact ID",
                reference_to=("Contact",),
                relationship_name="ConvertedContact",
                on_delete=KEEP,
            ),
            _readonly(
                "ConvertedOpportunityId",
                "reference",
                "Converted Opportunity ID",
                reference_to=("Opportunity",),
                relationship_name="ConvertedOpportunity",
                on_delete=KEEP,
            ),
        ),
    ),
    ObjectDef(
        "Campaign",
        "Campaign",
        "Campaigns",
        "701",
        _system()
        + (
            _f("Name", "string", "Campaign Name", length=80, nillable=False, name_field=True),
            _pick("Type", ("Webinar", "Conference", "Email", "Advertisement", "Direct Mail", "Partners"), "Type"),
            _pick("Status", ("Planned", "In Progress", "Completed", "Aborted")),
            _f("StartDate", "date", "Start Date"),
            _f("EndDate", "date", "End Date"),
            _f("IsActive", "boolean", "Active", nillable=False),
            _f("BudgetedCost", "currency", "Budgeted Cost in Campaign"),
            _f("ActualCost", "currency", "Actual Cost in Campaign"),
            _f("NumberSent", "double", "Num Sent in Campaign"),
            _ref("ParentId", "Campaign", "Parent", "Parent Campaign ID"),
            # A custom field a customer designates for write-back of the sourced-pipeline metric.
            _f("Sourced_Pipeline__c", "currency", "Sourced Pipeline"),
        ),
    ),
    ObjectDef(
        "CampaignMember",
        "Campaign Member",
        "Campaign Members",
        "00v",
        _system(owner=False)
        + (
            _ref(
                "CampaignId", "Campaign", "Campaign", "Campaign ID", nillable=False, updateable=False, on_delete=CASCADE
            ),
            _ref("LeadId", "Lead", "Lead", "Lead ID", updateable=False, on_delete=CASCADE),
            _ref("ContactId", "Contact", "Contact", "Contact ID", updateable=False, on_delete=CASCADE),
            _pick("Status", ("Sent", "Responded")),
            _readonly("HasResponded", "boolean", "Responded", nillable=False),
            _readonly("FirstRespondedDate", "date", "First Responded Date"),
        ),
    ),
    ObjectDef(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        _system()
        + (
            _f("Name", "string", "Name", length=120, nillable=False, name_field=True),
            _ref("AccountId", "Account", "Account", "Account ID", on_delete=CASCADE),
            _f("Amount", "currency"),
            _f("CloseDate", "date", "Close Date", nillable=False),
            _pick("StageName", tuple(s[0] for s in OPPORTUNITY_STAGES), "Stage", nillable=False),
            _f("Probability", "percent", "Probability (%)"),
            _readonly("ExpectedRevenue", "currency", "Expected Amount", calculated=True),
            _readonly("IsClosed", "boolean", "Closed", nillable=False),
            _readonly("IsWon", "boolean", "Won", nillable=False),
            _pick(
                "ForecastCategoryName", ("Pipeline", "Best Case", "Commit", "Closed", "Omitted"), "Forecast Category"
            ),
            _pick("Type", OPPORTUNITY_TYPES, "Opportunity Type"),
            _pick("LeadSource", LEAD_SOURCES, "Lead Source"),
            _ref("CampaignId", "Campaign", "Campaign", "Campaign ID"),
            _f("NextStep", "string", "Next Step"),
            _readonly("FiscalYear", "int", "Fiscal Year"),
            _readonly("FiscalQuarter", "int", "Fiscal Quarter"),
            _f("Description", "textarea", length=32000),
            _pick("Region__c", REGIONS, "Region"),
            _f("Forecast_Score__c", "double", "Forecast Score"),
            _readonly(
                "Weighted_Amount__c", "currency", "Weighted Amount", calculated=True, formula="Amount * Probability"
            ),
        ),
    ),
    ObjectDef(
        "OpportunityHistory",
        "Opportunity History",
        "Opportunity History",
        "008",
        _system(owner=False, modifiable=False)
        + (
            _readonly(
                "OpportunityId",
                "reference",
                "Opportunity ID",
                reference_to=("Opportunity",),
                relationship_name="Opportunity",
                nillable=False,
                on_delete=CASCADE,
            ),
            _readonly("StageName", "picklist", "Stage", picklist=tuple(s[0] for s in OPPORTUNITY_STAGES), length=255),
            _readonly("Amount", "currency"),
            _readonly("ExpectedRevenue", "currency", "Expected Revenue"),
            _readonly("CloseDate", "date", "Close Date"),
            _readonly("Probability", "percent", "Probability (%)"),
            _readonly("ForecastCategory", "picklist", "Forecast Category", length=255),
        ),
        updateable=False,
        createable=False,
        deletable=False,
    ),
    ObjectDef(
        "Case",
        "Case",
        "Cases",
        "500",
        _system()
        + (
            _readonly(
                "CaseNumber", "string", "Case Number", length=30, nillable=False, name_field=True, auto_number=True
            ),
            _ref("AccountId", "Account", "Account", "Account ID", on_delete=RESTRICT),
            _ref("ContactId", "Contact", "Contact", "Contact ID", on_delete=RESTRICT),
            _f("Subject", "string"),
            _pick("Status", ("New", "Working", "Escalated", "Closed"), nillable=False),
            _pick("Priority", ("High", "Medium", "Low")),
            _pick("Origin", ("Phone", "Email", "Web"), "Case Origin"),
            _pick("Type", ("Question", "Problem", "Feature Request"), "Case Type"),
            _pick(
                "Reason", ("Installation", "Equipment Complexity", "Performance", "Breakdown", "Other"), "Case Reason"
            ),
            _readonly("IsClosed", "boolean", "Closed", nillable=False),
            _readonly("ClosedDate", "datetime", "Closed Date"),
            _f("IsEscalated", "boolean", "Escalated", nillable=False),
            _f("Description", "textarea", length=32000),
        ),
    ),
    ObjectDef(
        "MilestoneType",
        "Milestone",
        "Milestones",
        "557",
        _system(owner=False)
        + (
            _f("Name", "string", length=80, nillable=False, name_field=True),
            _f("Description", "textarea", length=255),
        ),
    ),
    ObjectDef(
        "CaseMilestone",
        "Case Milestone",
        "Case Milestones",
        "55k",
        _system(owner=False)
        + (
            _readonly(
                "CaseId",
                "reference",
                "Case ID",
                reference_to=("Case",),
                relationship_name="Case",
                nillable=False,
                on_delete=CASCADE,
            ),
            _readonly(
                "MilestoneTypeId",
                "reference",
                "Milestone Type ID",
                reference_to=("MilestoneType",),
                relationship_name="MilestoneType",
                on_delete=RESTRICT,
            ),
            _readonly("StartDate", "datetime", "Start Date"),
            _readonly("TargetDate", "datetime", "Target Date"),
            _f("CompletionDate", "datetime", "Completion Date"),
            _readonly("IsCompleted", "boolean", "Completed", nillable=False),
            _readonly("IsViolated", "boolean", "Violation", nillable=False),
            _readonly("TargetResponseInMins", "int", "Target Response (Mins)"),
            _readonly("ElapsedTimeInMins", "int", "Elapsed Time (Mins)"),
        ),
        createable=False,
    ),
    ObjectDef(
        "Task",
        "Task",
        "Tasks",
        "00T",
        _system()
        + (
            _f("Subject", "string"),
            _pick(
                "Status",
                ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"),
                nillable=False,
            ),
            _pick("Priority", ("High", "Normal", "Low"), nillable=False),
            _pick("Type", ("Call", "Email", "Meeting", "Other")),
            _pick("TaskSubtype", ("Task", "Email", "Call", "ListEmail", "Cadence"), "Task Subtype", updateable=False),
            _f("ActivityDate", "date", "Due Date Only"),
            _ref("WhoId", ("Contact", "Lead"), "Who", "Name ID", on_delete=CASCADE),
            _ref("WhatId", ("Account", "Opportunity", "Case", "Campaign"), "What", "Related To ID", on_delete=CASCADE),
            _readonly(
                "AccountId",
                "reference",
                "Account ID",
                reference_to=("Account",),
                relationship_name="Account",
                on_delete=CASCADE,
            ),
            _readonly("IsClosed", "boolean", "Closed", nillable=False),
            _f("CallDurationInSeconds", "int", "Call Duration"),
            _f("Description", "textarea", length=32000),
        ),
    ),
    ObjectDef(
        "Event",
        "Event",
        "Events",
        "00U",
        _system()
        + (
            _f("Subject", "string"),
            _pick("Type", ("Call", "Email", "Meeting", "Other")),
            _pick("EventSubtype", ("Event",), "Event Subtype", updateable=False),
            _f("ActivityDateTime", "datetime", "Due Date Time"),
            _f("ActivityDate", "date", "Due Date Only"),
            _f("StartDateTime", "datetime", "Start Date Time"),
            _f("EndDateTime", "datetime", "End Date Time"),
            _f("DurationInMinutes", "int", "Duration"),
            _f("Location", "string"),
            _ref("WhoId", ("Contact", "Lead"), "Who", "Name ID", on_delete=CASCADE),
            _ref("WhatId", ("Account", "Opportunity", "Case", "Campaign"), "What", "Related To ID", on_delete=CASCADE),
            _readonly(
                "AccountId",
                "reference",
                "Account ID",
                reference_to=("Account",),
                relationship_name="Account",
                on_delete=CASCADE,
            ),
        ),
    ),
    ObjectDef(
        "Deal_Review__c",
        "Deal Review",
        "Deal Reviews",
        "a05",
        _system()
        + (
            _f("Name", "string", "Deal Review Name", length=80, name_field=True),
            _ref("Opportunity__c", "Opportunity", "Opportunity__r", "Opportunity"),
            _ref("Reviewer__c", "User", "Reviewer__r", "Reviewer", on_delete=KEEP),
            _f("Review_Date__c", "date", "Review Date"),
            _pick("Risk_Level__c", ("Low", "Medium", "High"), "Risk Level"),
            _f("Score__c", "double", "Score"),
            _f("Approved__c", "boolean", "Approved", nillable=False),
            _f("Notes__c", "textarea", "Notes", length=32768),
        ),
    ),
    # A change-event entity: listed and describable, but neither queryable nor replicateable, like the real one.
    ObjectDef(
        "OpportunityChangeEvent",
        "Opportunity Change Event",
        "Opportunity Change Events",
        None,
        (
            _readonly("Id", "id", "Change Event ID", nillable=False),
            _readonly("ChangeEventHeader", "string", "Change Event Header"),
            _readonly("Name", "string", "Name", length=120),
            _readonly("StageName", "picklist", "Stage", picklist=tuple(s[0] for s in OPPORTUNITY_STAGES), length=255),
            _readonly("Amount", "currency"),
        ),
        queryable=False,
        replicateable=False,
        updateable=False,
        createable=False,
        deletable=False,
    ),
)

OBJECTS: dict[str, ObjectDef] = {obj.name: obj for obj in _OBJECTS}
_OBJECTS_BY_LOWER = {obj.name.lower(): obj for obj in _OBJECTS}
STORED_OBJECTS: tuple[ObjectDef, ...] = tuple(obj for obj in _OBJECTS if obj.queryable)
KEY_PREFIXES = {obj.key_prefix: obj.name for obj in _OBJECTS if obj.key_prefix}


def find_object(name: str) -> ObjectDef | None:
    """The object called `name` (any case), or None."""
    return _OBJECTS_BY_LOWER.get(name.lower())


def child_relationships(parent: str) -> list[dict[str, Any]]:
    children = []
    for obj in _OBJECTS:
        for f in obj.fields:
            if parent in f.reference_to and f.name not in ("CreatedById", "LastModifiedById"):
                children.append(
                    {
                        "cascadeDelete": f.cascade_delete,
                        "childSObject": obj.name,
                        "deprecatedAndHidden": False,
                        "field": f.name,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": None,
                        "restrictedDelete": f.restricted_delete,
                    }
                )
    return children


def describe_global(version: str) -> dict[str, Any]:
    return {
        "encoding": "UTF-8",
        "maxBatchSize": 200,
        "sobjects": [obj.summary(version) for obj in _OBJECTS],
    }
